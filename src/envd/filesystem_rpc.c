/* PLACEHOLDER: replaced by the filesystem service implementation. */
#include "envd.h"
const struct rpc_method filesystem_methods[] = { { 0 } };
