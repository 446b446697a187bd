/* Versions shared by hutch and envd. */
#pragma once

#define HUTCH_VERSION "0.1.0"
/* The version of E2B's envd whose behaviour (every SDK feature gate up to it) envd meets; the
 * control plane reports it as envdVersion. */
#define ENVD_PROTOCOL_VERSION "0.6.4"
