"""The admin console: server-rendered pages on the admin listener (``/``) for operators who
sign in with an admin key. No JavaScript, no build step, no asset from another origin."""
