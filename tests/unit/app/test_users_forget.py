"""`driftrec users forget`: the users' state goes, the learner worker drops their pairs."""

from __future__ import annotations

import json

from driftrec.cli import main
from driftrec.state import MemoryStateStore, StateWrite, UserState


def test_forget_command_erases_state_in_a_file_store(tmp_path, capsys):
    path = tmp_path / "state.json"
    st = MemoryStateStore(path)
    st.commit(StateWrite(users={u: UserState(u, n_events=1) for u in ("a", "b")}))
    st.close()
    assert main(["users", "forget", "a", "zz", "--state", f"file://{path}"]) == 0
    assert json.loads(capsys.readouterr().out) == {"forgotten": 2, "had_state": 1}
    back = MemoryStateStore(path)
    assert set(back.users()) == {"b"} and set(back.forgotten()) == {"a", "zz"}


def test_learner_worker_drops_forgotten_users_pairs():
    from driftrec.app.runtime import LearnerWorker
    from driftrec.stream import Event, Record, encode

    class _Learner:
        def __init__(self):
            from driftrec.learner.windows import RollingWindow

            self.window = RollingWindow(100)
            self.forgot = []
            self.since_train = 0  # events since the last training (the Learner protocol)

        def observe_hits(self, hits):
            return False

        def observe_many(self, events):
            for e in sorted(events, key=lambda x: x.ts):
                self.window.add(e.ts, e.user_id)

        def forget_users(self, users):
            self.forgot.extend(users)

    store = MemoryStateStore()
    lrn = _Learner()
    w = LearnerWorker(
        lrn, sink=None, store_dir="/nonexistent", registry=store, base_model="m", time_bounds=None, group="g"
    )
    evs = [Event(f"e{i}", "click", "a" if i % 2 else "b", f"i{i}", 1000 + i) for i in range(6)]
    w.handle([Record("events.clicks", 0, 10 + i, None, encode(e)) for i, e in enumerate(evs)], train=False)
    assert len(lrn.window) == 6 and w.window_start() == {("events.clicks", 0): 10}
    store.forget(["b"], 10_000)
    assert w.refresh_forgotten() == ["b"]
    assert [x.value for x in lrn.window] == ["a", "a", "a"] and lrn.forgot == ["b"]
    assert w.window_start() == {("events.clicks", 0): 11}
    later = Event("e9", "click", "b", "i9", 2000)  # before its forget time: left out
    w.handle([Record("events.clicks", 0, 16, None, encode(later))], train=False)
    assert len(lrn.window) == 3 and w.dropped_forgotten == 1


def test_learner_worker_reads_a_recs_tombstone():
    from driftrec.app.runtime import LearnerWorker, TopicNames
    from driftrec.stream import Record

    w = LearnerWorker(
        learner=None, sink=None, store_dir="/nonexistent", registry=None, base_model="m", time_bounds=None
    )
    recs = TopicNames().recs
    w.handle(
        [Record(recs, 0, 0, b"u1", json.dumps({"user_id": "u1", "items": [{"item_id": "i1"}]}).encode())],
        train=False,
    )
    assert w._topk == {"u1": {"i1"}}
    w.handle([Record(recs, 0, 1, b"u1", b"")], train=False)  # the tombstone of `users forget --tombstones`
    assert w._topk == {}
