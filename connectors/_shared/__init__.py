"""What several connectors share: the plugin factories' wiring (:mod:`.plugin`), the guarded
action steps (:mod:`.actions`), the demo fakes' HTTP plumbing (:mod:`.fake_http`), owner and
signing marks in tags, labels and metadata (:mod:`.marks`), fast JSON log parsing
(:mod:`.fast_json`) and the exposure inventory read scope by scope (:mod:`.inventory`).

Like every connector it imports only the core's records, protocols, options and errors.
"""
