"""The composition root: settings, the Application and its inbox, the runner, the web app, the
command line and the demo build everything the other packages hold and wire it together.
Nothing imports these modules; they may import every package. Two subpackages count apart:
``bot.kernel`` (what every package may import) and ``bot.sandbox`` (the local Bot API server).
See the README's Layout section."""
