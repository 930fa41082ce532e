"""The control plane's HTTP routes, one router module per resource; ``app.create_app`` combines them."""
