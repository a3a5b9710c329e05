"""The shared kernel every package may import: the schemas of the operator's rule files
(``config``, ``care_config``, ``survey_config``, read by ``files``), the customer-facing texts
(``texts``), the clock (``clock``) and the channel-neutral replies rules return (``replies``).
It imports no other carebot package."""
