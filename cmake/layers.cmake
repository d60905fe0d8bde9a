# The layers and what each may use (docs/layout.md): core -> io -> instrument -> {simulation, network,
# flatfield} -> validation -> stages -> pipeline. flatfield and network never use the simulator; network
# never uses the instrument. tools/ and bench/ may use every layer, but no layer's internal headers (those
# whose first line says "internal to <layer>/"), which no other layer may include either.
set(CSST_LAYERS core io instrument simulation network flatfield validation stages pipeline)
set(CSST_USES_core core)
set(CSST_USES_io core io)
set(CSST_USES_instrument core io instrument)
set(CSST_USES_simulation core io instrument simulation)
set(CSST_USES_network core io network)
set(CSST_USES_flatfield core io instrument flatfield)
set(CSST_USES_validation core io instrument simulation network flatfield validation)
set(CSST_USES_stages core io instrument simulation network flatfield validation stages)
set(CSST_USES_pipeline ${CSST_LAYERS})
set(CSST_CLIENTS tools bench)  # may use every layer's public headers
