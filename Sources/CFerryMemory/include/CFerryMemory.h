#ifndef CFERRY_MEMORY_H
#define CFERRY_MEMORY_H

#include <stdint.h>

/// Bytes the C allocator has handed out and not had back: glibc's `mallinfo2`, summed over
/// every arena, plus the blocks it mapped on its own (`uordblks + hblkhd`). Unlike the resident
/// set, this does not count memory freed and kept for reuse. -1 where the C library cannot say.
int64_t ferry_heap_in_use(void);

#endif
