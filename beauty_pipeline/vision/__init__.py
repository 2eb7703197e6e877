"""Face vision: detection, crops, head pose, de-duplication and the face stage built on them."""
