# The layers and what each may use (README "Layout"): core -> instrument -> {simulation, network,
# flatfield} -> validation -> stages -> pipeline. flatfield and network never use the simulator.
set(CSST_LAYERS core instrument simulation network flatfield validation stages pipeline)
set(CSST_USES_core core)
set(CSST_USES_instrument core instrument)
set(CSST_USES_simulation core instrument simulation)
set(CSST_USES_network core network)
set(CSST_USES_flatfield core instrument flatfield)
set(CSST_USES_validation core instrument simulation network flatfield validation)
set(CSST_USES_stages core instrument simulation network flatfield validation stages)
set(CSST_USES_pipeline ${CSST_LAYERS})
