"""The workflow bundle the benchmarks deploy: a 10-step workflow of trivial steps, a
0-step one, and one waiting on a hook (``workflows.py`` of a ``python`` deployment)."""

BUNDLE = """
from compute_worker import create_hook, step, workflow

@step
async def inc(x):
    return x + 1

@workflow
async def ten(x):
    for _ in range(10):
        x = await inc(x)
    return x

@workflow
async def zero():
    return 0

@workflow
async def hooked(token):
    return await create_hook(token=token)
"""
