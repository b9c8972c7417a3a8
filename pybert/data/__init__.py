"""Data preparation: TFRecords in the seed's formats and tf.data input pipelines.

classification  GLUE-style TSV processors and features (classification, regression)
squad           SQuAD v1.1/v2.0 reading and featurization (+ post-processing arrays)
retrieval       XTREME sentence retrieval records (BUCC, Tatoeba)
tagging         XTREME tagging records (PAN-X, UDPOS): word labels on first pieces
pretraining     masked-LM / next-sentence instances from raw text (C++ core)
records         tf.train.Example serialization and atomic TFRecord writers
pipelines       tf.data input pipelines for the training tools
"""
