"""The zoo home ($ZOO_HOME) as files: its folders and atomic writes (`paths`), and the
caches' lock shared by every process using them (`lock`).
"""
