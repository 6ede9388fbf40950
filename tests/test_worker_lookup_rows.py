"""A batch holding two entries of one task (a re-enqueue beside the original) looks the
row up once: each entry still gets a row of its own, since beginning one changes it."""

from executor.worker.lookup import _rows_of_their_own


def test_repeats_of_one_task_get_copies_and_the_rest_stay_as_read():
    first, other = {"id": "a", "payload": {"n": [1]}}, {"id": "b"}
    rows = _rows_of_their_own([first, None, other, first])
    assert rows[0] is first and rows[1] is None and rows[2] is other
    assert rows[3] == first and rows[3] is not first
    assert rows[3]["payload"]["n"] is not first["payload"]["n"]  # deep: begin changes nested
