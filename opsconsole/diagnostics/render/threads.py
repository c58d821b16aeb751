"""Text rendering of the threads results, laid out like ``py-spy dump`` so it reads familiar.

Pure string work; runs wherever ``to_text`` is called (dump worker, IO loop or the CLI).
"""

from __future__ import annotations

from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.threads import StackFrame, TaskInfo, ThreadDump, ThreadInfo


def _frames(frames: tuple[StackFrame, ...], indent: str) -> list[str]:
    lines = []
    for f in frames:
        lines.append(f"{indent}{f.function} ({f.file}:{f.line})")
        if f.source:
            lines.append(f"{indent}    {f.source}")
    return lines


def _thread(t: ThreadInfo) -> list[str]:
    tags = []
    if t.native_id is not None:
        tags.append(f"native {t.native_id}")
    if t.daemon:
        tags.append("daemon")
    if not t.known:
        tags.append("not a threading.Thread")
    head = f"Thread 0x{t.ident:x}"
    if tags:
        head += f" ({', '.join(tags)})"
    lines = [f'{head}: "{t.name}"', *_frames(t.frames, "    ")]
    if not t.frames:
        lines.append("    (no Python frames)")
    if t.omitted_frames:
        lines.append(f"    ... {t.omitted_frames} outer frames omitted")
    return lines


def _task(t: TaskInfo) -> list[str]:
    return [f'Task "{t.name}" ({t.state}): {t.coroutine}', *_frames(t.frames, "    ")]


@text_renderer(ThreadDump)
def _(r: ThreadDump) -> str:
    lines: list[str] = []
    for t in r.threads:
        lines += [*_thread(t), ""]
    if r.excluded:
        lines += [f"({r.excluded} opsconsole thread{'s' if r.excluded != 1 else ''} not shown)", ""]
    for loop in r.loops:
        state = "running" if loop.running else "closed" if loop.closed else "not running"
        where = f", thread 0x{loop.thread_ident:x}" if loop.thread_ident is not None else ""
        n = len(loop.tasks)
        lines.append(f"Event loop {loop.loop_id} ({state}{where}): {n} task{'s' if n != 1 else ''}")
        if loop.error:
            lines.append(f"    {loop.error}")
        for task in loop.tasks:
            lines += [*("    " + line for line in _task(task)), ""]
        if not loop.tasks:
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
