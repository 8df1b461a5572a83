"""Backups and restore (docs/OPERATIONS.md).

- archive.py: the file: a tar of `manifest.json`, `media.jsonl.gz` (every media file at
  backup time, by content hash) and `database.jsonl.gz` (every record of every table, in
  SurrealQL's own literal syntax, which round-trips every type the engine has); writing it
  and checking it.
- snapshot.py: one consistent read of every table (in pages under the process's write lock
  on the embedded engine, one transaction on a server), and writing records back.
- media.py: local media, incrementally: a content-addressed mirror beside the backups.
- destinations.py: where backups go: a local directory, an S3 prefix, or both.
- service.py: making a backup under a lease in the database, retention, the schedule.
- restore.py: the offline restore; web.py: the admin page; cli.py: the commands.
"""
