"""The training engine: schedules, optimisation, the EMA teacher, checkpoints, monitoring and the loop."""
