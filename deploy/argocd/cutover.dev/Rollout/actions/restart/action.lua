-- `cutover restart`: every pod restarts, a few at a time, once its start is before restartAt.
obj.spec.restartAt = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
