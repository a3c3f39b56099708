"""The demo deployment that ``compute-worker serve --dev`` (``make run``) activates."""

from __future__ import annotations

from compute_worker import create_hook, get_writable, sleep, step, workflow


@step
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@step
async def shout(text: str) -> str:
    stream = get_writable()
    for word in text.upper().split():
        await stream.write(word + " ")
    await stream.close()
    return text.upper()


@workflow
async def hello(name: str = "world") -> str:
    greeting = await greet(name)
    await sleep("1s")
    return await shout(greeting)


@workflow
async def approval(order_id: str) -> dict[str, object]:
    hook = create_hook(token=f"approve:{order_id}")
    decision = await hook
    return {"order": order_id, "decision": decision}
