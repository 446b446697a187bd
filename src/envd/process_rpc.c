/* PLACEHOLDER */
#include "envd.h"
const struct rpc_method process_methods[] = { { 0 } };
