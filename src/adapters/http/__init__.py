"""HTTP edge (Starlette): routes, wire format, the error table, middleware, auth."""
