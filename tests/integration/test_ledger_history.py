"""The Account history's reading of the ledger (app/db/ledger.py): newest first, a page at a
time by cursor, each entry with the balance it left, a charge with its job's template."""

from __future__ import annotations

import html
import re

from app.db import ledger as ledger_db
from app.db import users as users_db
from app.db.connection import rid
from tests.helpers import Account
from tests.integration.api_support import in_app, running_app, user_id


async def test_pages_carry_a_running_balance_and_name_the_template(db):
    user = await users_db.create(db, "lee@example.com", "x", 1000)
    uid = user.id
    await db.write(
        "CREATE video_job:j1 CONTENT { owner: $u, template: 'car-commercial', "
        "template_name: 'Car commercial', start_key: 'k', variables: {}, prompt: 'p', "
        "provider: 'local', endpoint: 'e', parameters: {}, status: 'completed', credits: 80, "
        "deadline_at: time::now() };"
        "UPDATE $u SET balance -= 80;"
        "CREATE ledger CONTENT { owner: $u, amount: -80, reason: 'video', job: 'j1' };",
        {"u": rid("user", user.id)})
    for amount in (50, -30, 200):
        await users_db.grant(db, uid, amount, "grant")
    balance = (await users_db.by_id(db, uid)).balance
    assert balance == 1000 - 80 + 50 - 30 + 200

    first = await ledger_db.history(db, uid, limit=3)
    assert first.more is True
    assert [(r.amount, r.balance_after) for r in first.rows] == [
        (200, balance), (-30, balance - 200), (50, balance - 170)]
    rest = await ledger_db.history(db, uid, before=first.rows[-1].created_at, limit=3)
    assert rest.more is False
    assert [(r.reason, r.amount, r.balance_after, r.template_name)
            for r in rest.rows] == [("video", -80, 920, "Car commercial"),
                                       ("signup", 1000, 1000, None)]


async def test_account_page_pages_the_history(settings):
    async with running_app(settings, idle=True) as client:
        alice = await Account.signup(client, "alice@example.com")
        db = client.app.state.services.db
        uid = user_id(client, alice.email)
        for n in range(ledger_db.PAGE + 2):
            in_app(client, users_db.grant, db, uid, n + 1, "grant")
        first = (await alice.get("/account")).text
        assert first.count('class="ledger-what"') == ledger_db.PAGE
        older = re.search(r'href="(/account\?before=[^"#]+)#history"', first)
        assert older, "no link to older entries"
        rest = (await alice.get(html.unescape(older[1]))).text
        # the two oldest grants and the welcome credits, the balance down to the first
        assert rest.count('class="ledger-what"') == 3 and "Welcome credits" in rest
        assert re.findall(r'data-label="Balance">(\d+)<', rest) == ["1003", "1001", "1000"]
        assert "Older entries" not in rest and 'href="/account#history">Newest' in rest
