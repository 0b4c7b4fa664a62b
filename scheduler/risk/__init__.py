"""The risk model and what it reads: the feature matrix (`features`) and the
LightGBM model (`model`), pure code that never touches the database."""
