/* hutch-shim: `hutch shim RUN_DIR` as a small program of its own (see runtime/jail/shim.c). */
#include "runtime/runtime.h"

int main(int argc, char **argv)
{
	return jail_shim_main(argc, argv);
}
