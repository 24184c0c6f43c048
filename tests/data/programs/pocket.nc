(pocket.nc - CAM-style output: work zero on the stock top, cuts to Z-{depth})
(a 20 x 12 mm pocket in two passes, then back to a safe height)
G21 G90 G54 G17
G0 Z5.000
G0 X10.000 Y10.000
M3 S{spindle}
G1 Z-0.750 F{plunge}
G1 X30.000 Y10.000 F{feed}
G1 X30.000 Y22.000
G1 X10.000 Y22.000
G1 X10.000 Y10.000
G1 Z-{depth} F{plunge}
G1 X30.000 Y10.000 F{feed}
G1 X30.000 Y22.000
G1 X10.000 Y22.000
G1 X10.000 Y10.000
G2 X14.000 Y14.000 I2.000 J2.000
G0 Z5.000
M5
G0 X0 Y0
M2
