"""Child workflows: a run a workflow starts (``start_workflow``, a graph's ``run_workflow``
node) is a run of its own on the parent's deployment, linked both ways.

- The parent first creates a hook whose token is ``child:<parent run id>:<call index>``
  (deterministic), then runs a step ``start_workflow:<name>`` that starts the child with
  that token as its idempotency key, so the child starts once however often the parent
  replays, retries or crashes; the step's result is ``{"runId", "workflowName"}``.
- The child carries ``{"parentRunId", "parentToken"}`` in its execution context; when it
  ends, its outcome (``child_outcome``) is delivered to that hook in the same transaction,
  and the parent's ``child.result()`` records it as a step ``workflow_result:<name>``.
- Cancelling a run cancels its children that have not ended, recursively. The children
  are found in its step history and, for a child whose start step has not been recorded
  yet, through the idempotency record of each child hook's token: a child start locks the
  parent and refuses an ended one, so no child escapes a cancel. A parent that completes
  or fails leaves its children running.
"""

from __future__ import annotations

from typing import Any

from compute_worker.domain.world import Event, EventType, Run

START_STEP = "start_workflow:"
RESULT_STEP = "workflow_result:"
TOKEN_PREFIX = "child:"
CHILD_SCOPE = "children"  # the idempotency scope of child starts


def child_token(parent_run_id: str, index: int) -> str:
    return f"{TOKEN_PREFIX}{parent_run_id}:{index}"


def child_context(parent_run_id: str, token: str) -> dict[str, Any]:
    return {"parentRunId": parent_run_id, "parentToken": token}


def parent_of(run: Run) -> tuple[str, str] | None:
    """(parent run id, hook token) of a child run, None for any other run."""
    context = run.execution_context or {}
    parent, token = context.get("parentRunId"), context.get("parentToken")
    if isinstance(parent, str) and isinstance(token, str):
        return parent, token
    return None


def child_outcome(run: Run) -> dict[str, Any]:
    """What a parent's hook receives when its child ``run`` ends."""
    outcome: dict[str, Any] = {"runId": run.run_id, "status": run.status}
    if run.status == "completed":
        outcome["output"] = run.output
    if run.error is not None:
        outcome["error"] = {"message": run.error.message}
    return outcome


def child_tokens(run_id: str, events: list[Event]) -> list[str]:
    """The tokens of the child hooks the run ``run_id`` created, in creation order."""
    prefix = f"{TOKEN_PREFIX}{run_id}:"
    tokens = (
        (event.event_data or {}).get("token")
        for event in events
        if event.event_type == EventType.HOOK_CREATED
    )
    return [token for token in tokens if isinstance(token, str) and token.startswith(prefix)]


def children_of(events: list[Event]) -> list[str]:
    """The run ids of the children a run's log says it started, in start order."""
    starts = {
        event.correlation_id
        for event in events
        if event.event_type == EventType.STEP_CREATED
        and str((event.event_data or {}).get("stepName", "")).startswith(START_STEP)
    }
    found: list[str] = []
    for event in events:
        if event.event_type == EventType.STEP_COMPLETED and event.correlation_id in starts:
            result = (event.event_data or {}).get("result")
            if isinstance(result, dict) and isinstance(result.get("runId"), str):
                found.append(result["runId"])
    return found
