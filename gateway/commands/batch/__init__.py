"""``scoring-gateway batch``: a bounded input scored through a pipeline's backend into files.

The flow, one module per step:
    options        what the run is asked to do (names of the output files, the input)
    file_input     a CSV or Parquet file, read in segments (types settled over the whole file)
    topic_input    a range of the pipeline's input topic, read without joining its group
    scorer         the streaming dispatcher as the scorer (codec settings for batch, target capture)
    scoring_loop   segments → scored outcomes → parts, with at most two segments in flight
    layout         outcomes → the columns of each output file (Qlik's or DataRobot's layout)
    writeback      parts written atomically; the final files assembled from them
    state          the resume state beside the files
    progress       counters, the progress bar or lines, the summary
    job            one run from the input to the files
    run            the run's wiring: the pipeline's dispatcher as the scorer, the job, the summary
    cli            the command line (add_arguments, main)
"""
