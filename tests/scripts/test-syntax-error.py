# Does not parse: nbdkit must exit non-zero with the SyntaxError.
API_VERSION = 2

def open(readonly)
    return 1
