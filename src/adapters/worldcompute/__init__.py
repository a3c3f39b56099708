"""Workflow execution: the authoring API, bundle loading, the engine backends."""
