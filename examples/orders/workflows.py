"""An order workflow for ``examples/client_quickstart.py``: two steps, a live
``progress`` stream, and a hook that waits for someone to approve the order."""

from __future__ import annotations

from compute_worker import create_hook, get_writable, step, workflow


@step
async def reserve(order_id: str) -> dict[str, object]:
    await get_writable("progress").write(f"reserved stock for {order_id}\n")
    return {"order": order_id, "items": 3}


@step
async def say(text: str, close: bool = False) -> str:
    progress = get_writable("progress")
    await progress.write(text)
    if close:
        await progress.close()
    return text


@workflow
async def checkout(order_id: str) -> dict[str, object]:
    reservation = await reserve(order_id)
    await say(f"waiting for approval of {order_id}\n")
    decision = await create_hook(token=f"approve:{order_id}", metadata={"order": order_id})
    await say(f"{order_id}: {'approved' if decision.get('approved') else 'refused'}\n", close=True)
    return {"reservation": reservation, "decision": decision}
