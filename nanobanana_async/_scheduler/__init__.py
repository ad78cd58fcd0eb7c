"""The shared polling scheduler: a pure planner and the async runner that drives it."""
