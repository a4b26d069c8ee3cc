/*
 * For a musl binary built with BUILD_STD=1: LLVM's libunwind.a as Debian ships it was
 * compiled against glibc with _FORTIFY_SOURCE, so it calls three of glibc's checked printf
 * functions (in its debug logging and its assert messages) that musl does not have. These
 * give them on top of musl's own, with the one check the caller asked for.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list ap)
{
	(void)flag;
	if (n > slen)
		abort();
	return vsnprintf(s, n, fmt, ap);
}

int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	return vfprintf(f, fmt, ap);
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	int n;

	(void)flag;
	va_start(ap, fmt);
	n = vfprintf(f, fmt, ap);
	va_end(ap);
	return n;
}
