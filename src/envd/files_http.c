/* PLACEHOLDER */
#include "envd.h"
const struct http_route files_route = { 0 };
