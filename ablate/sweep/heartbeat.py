"""RDB storages only: record a heartbeat for the running trial, as `study.optimize` would
(ask/tell does not), so other machines can fail it if this one disappears."""

from __future__ import annotations

import threading


class Heartbeat:
    """A daemon thread beating every heartbeat interval until `close`; inert elsewhere."""

    def __init__(self, storage, trial_id: int):
        self.stop = threading.Event()
        self.thread = None
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        if interval:

            def beat() -> None:
                while not self.stop.wait(interval):
                    storage.record_heartbeat(trial_id)

            storage.record_heartbeat(trial_id)
            self.thread = threading.Thread(target=beat, daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stop.set()
