"""Running measurements in child processes (each started by ``core.child``): the sweep over
settings and the profile grid on top of it, and the studies that need fresh processes (legacy
Keras 2, the findings, the shm targets).
"""
