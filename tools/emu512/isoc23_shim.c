/* The bochscpu-python wheel calls glibc 2.38's C23 names; older glibc (Debian
 * 12: 2.36) has only the classic ones.  tools/avx512_emu.sh builds this into
 * libcsm_isoc23.so, which csm_emu512.py loads globally before bochscpu. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

unsigned long long __isoc23_strtoull(const char *s, char **end, int base)
{
    return strtoull(s, end, base);
}

int __isoc23_sscanf(const char *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsscanf(s, fmt, ap);
    va_end(ap);
    return r;
}
