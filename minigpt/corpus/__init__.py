"""GPT-3's training data in miniature (Brown et al. 2020, section 2.2, Table 2.2, Appendix A).

GPT-3 turned 45 TB of compressed Common Crawl text into 570 GB by three steps, then mixed it with
four curated corpora. Each step has a small module here:

- :mod:`minigpt.corpus.webpages`: a miniature web crawl made by code (the plays, plus pages
  built to look like the web's worst: boilerplate, keyword spam, garbled text and near-copies
  of plays), so that every filter has something to remove;
- :mod:`minigpt.corpus.quality`: the quality classifier, a logistic regression on hashed word
  features, and the Pareto rule that keeps a document when ``np.random.pareto(9) > 1 - score``;
- :mod:`minigpt.corpus.dedup`: fuzzy deduplication with MinHash signatures and
  locality-sensitive hashing (bands of rows), vectorised over documents with numpy;
- :mod:`minigpt.corpus.mixture`: Table 2.2 as sampling weights, the epochs each source gets in
  300 billion tokens, and a sampler that draws batches by weight;
- :mod:`minigpt.corpus.scoring`: how the results were measured (multiple-choice scoring rules)
  and a scorecard of the paper's headline numbers, each with its table.
"""
