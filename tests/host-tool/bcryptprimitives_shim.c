/* Test shim for Wine < 9 only (Debian 12 ships Wine 8): Rust's standard
 * library imports ProcessPrng from bcryptprimitives.dll, which every Windows
 * since 10 has and older Wine lacks. This stands in for it under Wine; it is
 * never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
