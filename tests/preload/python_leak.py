"""Leaks 64 KiB a step through C allocations made by a C extension
(ctypes calling malloc); with --clean, frees each one: the same work
without the leak. Runs for the seconds given as its first argument."""
import ctypes
import sys
import time

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

clean = "--clean" in sys.argv
kept = []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    p = libc.malloc(64 << 10)
    libc.memset(p, 1, 64 << 10)
    if clean:
        libc.free(p)
    else:
        kept.append(p)
    table = {i: str(i) * 10 for i in range(200)}
    time.sleep(0.02)
print("kept", len(kept))
