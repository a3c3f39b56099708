"""A Python bundle with a schedule and child runs (README: Schedules, Child workflows).

``nightly_invoices`` starts every night at 02:30 Berlin time (and on
``POST /v1/schedules/nightly_invoices/trigger``); it fans out one ``invoice`` child run per
customer, waits for all of them and sums what they billed. A child that fails is reported,
not fatal to the night's run.
"""

from __future__ import annotations

from compute_worker import StepFailedError, start_workflow, step, workflow

CUSTOMERS = ("acme", "globex", "initech")


@step(max_retries=2)
async def bill(customer: str, day: str) -> dict[str, object]:
    """Where the billing service would be called (retried twice, then the child fails)."""
    return {"customer": customer, "day": day, "amount": 100 * len(customer)}


@workflow
async def invoice(customer: str, day: str) -> dict[str, object]:
    return await bill(customer, day)


@workflow(schedule="30 2 * * *", timezone="Europe/Berlin", catch_up="one")
async def nightly_invoices(tick: dict[str, object]) -> dict[str, object]:
    day = str(tick["scheduledAt"])[:10]
    children = [await start_workflow("invoice", customer, day) for customer in CUSTOMERS]
    billed, failed = [], []
    for child in children:
        try:
            billed.append(await child.result())
        except StepFailedError as failure:
            failed.append({"run": child.run_id, "error": failure.error_message})
    total = sum(int(str(item["amount"])) for item in billed)
    return {"day": day, "total": total, "invoices": len(billed), "failed": failed}
