"""What several connectors share: the plugin factories' wiring (:mod:`.plugin`), the guarded
action steps (:mod:`.actions`) and the demo fakes' HTTP plumbing (:mod:`.fake_http`).

Like every connector it imports only the core's records, protocols, options and errors.
"""
