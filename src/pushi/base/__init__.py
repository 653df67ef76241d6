"""Core of Pushi: State (the router), the store worker and the process runner."""
