"""Self-distillation objectives. Each is a module called as ``objective(student, teacher, teacher_temp)``,
so that an engine can sum any of them without knowing which they are."""

from geodino.objectives.dino import DINOLoss

__all__ = ["DINOLoss"]
