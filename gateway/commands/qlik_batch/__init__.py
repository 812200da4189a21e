"""``scoring-gateway qlik-batch``: run a Qlik Predict deployment's own server-side batch prediction.

The command creates (or updates) the deployment's batch-prediction configuration from the
pipeline's Qlik backend and the command-line options, starts it (``…/actions/predict``), follows it
to ``ready`` with live progress and a bounded wait, and reports the output files and the job's
details; SIGTERM or SIGINT cancels the job through Qlik's cancel route. See
``docs/vendors/qlik-batch-jobs.md``.
"""
