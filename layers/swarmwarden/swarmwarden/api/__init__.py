"""The HTTP API: request and response models, what each route does, and the routes themselves."""
