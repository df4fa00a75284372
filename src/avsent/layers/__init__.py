"""Building blocks that plugins share (as timm's ``timm.layers``): masks, attention, SPD-Conv.

Core code: plugins import these, never each other. A block lives here once two components
need it, or when it is the paper's own operation (SPD-Conv, the attention of eqs. 4–8).
"""
