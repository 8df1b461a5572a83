from app.jobs.states import ACTIVE, FINAL, TRANSITIONS, Status, public_status, sources_of


def test_final_states_have_no_way_out():
    for s in FINAL:
        assert TRANSITIONS[s] == frozenset()


def test_every_active_state_can_fail_or_be_canceled():
    for s in ACTIVE:
        assert {Status.FAILED, Status.CANCELED} <= TRANSITIONS[s]


def test_completion_only_from_finalizing():
    assert sources_of(Status.COMPLETED) == ["finalizing"]
    assert "pending" not in sources_of(Status.FINALIZING)


def test_public_status_folds_internal_states():
    assert public_status("queued") == "processing"
    assert public_status("finalizing") == "processing"
    assert public_status("pending") == "pending"
    assert public_status("completed") == "completed"
