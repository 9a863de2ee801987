"""kill -9 in the middle of a reply keeps the user turn and the partial reply."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from sessions.models import Role, Status
from sessions.store import Store

WRITER = textwrap.dedent(
    """
    import signal, sys, threading
    # Python leaves SIGINT ignored when the parent ignored it (a job started with `&`):
    # install the default handler so Ctrl+C reaches the reply as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from engines.fake import FakeEngine
    from engines.base import GenerationParams
    from sessions.store import Store
    from sessions.models import Role
    from sessions.turns import run_reply

    store = Store(sys.argv[1])
    session = store.create_session("crash")
    user = store.add_message(session.id, Role.USER, "讲个故事")
    engine = FakeEngine(["很久以前 " * 2000], delay=0.01)

    def started(piece, seen=[0]):
        seen[0] += 1
        if seen[0] == 1:
            print("streaming", flush=True)

    run_reply(store, engine, session_id=session.id, parent_id=user.id,
              prompt=[{"role": "user", "content": "讲个故事"}],
              params=GenerationParams(max_new_tokens=100000), cancel=threading.Event(),
              on_piece=started)
    """
)


def test_kill_9_mid_reply_keeps_user_turn_and_partial_reply(tmp_path):
    db = tmp_path / "crash.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "streaming"
    time.sleep(1.5)  # three flush intervals
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    store = Store(db)
    session = store.list_sessions()[0]
    branch = store.branch(session.id)
    assert [m.role for m in branch] == [Role.USER, Role.ASSISTANT]
    assert branch[0].content == "讲个故事"
    partial = branch[1]
    assert partial.status == Status.PARTIAL  # shown as incomplete
    assert partial.content.startswith("很久以前")
    assert 0 < len(partial.content) < len("很久以前 " * 2000)


def test_ctrl_c_mid_reply_saves_the_partial_reply_as_cancelled_with_its_metadata(tmp_path):
    db = tmp_path / "int.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "streaming"
    time.sleep(0.3)  # less than one flush interval: nothing flushed yet
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)

    store = Store(db)
    reply = store.branch(store.list_sessions()[0].id)[1]
    assert reply.status == Status.CANCELLED
    assert reply.content.startswith("很久以前")  # the unflushed text was saved too
    assert reply.meta["model"] == "demo" and reply.meta["finish_reason"] == "cancelled"
