/* PLACEHOLDER */
#include "envd.h"
