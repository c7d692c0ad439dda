"""Presenting typed results: the profile table and its verdicts, the findings report, the shm
targets, and the offline asv site. Nothing here measures.
"""
