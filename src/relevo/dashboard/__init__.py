"""The live dashboard: one page that shows the cluster as it breaks and heals (`relevo dashboard`).

`collect` gathers the data, `actions` does what the page's buttons ask through the same provider, lock
and maintenance code as the CLI, `app` serves the page, its data and its server-sent events, and
`process` runs it beside the controller for `relevo up`. Only `app` imports the web libraries.
"""
