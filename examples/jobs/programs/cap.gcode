; cap.gcode - a small printed cap (Marlin). {hotend_temp} and {bed_temp} are
; job parameters, substituted as numbers before streaming.
M140 S{bed_temp}        ; bed heating
M104 S{hotend_temp}     ; hotend heating
G28                     ; home all axes
M190 S{bed_temp}        ; wait for bed
M109 S{hotend_temp}     ; wait for hotend
G90
M82
G92 E0
G1 Z0.2 F1200
G1 X10 Y10 F3000
G1 X40 Y10 E1.2 F1200
G1 X40 Y40 E2.4
G1 X10 Y40 E3.6
G1 X10 Y10 E4.8
G1 Z0.4
G1 X40 Y10 E6.0
G1 X40 Y40 E7.2
G1 X10 Y40 E8.4
G1 X10 Y10 E9.6
G1 Z0.6
G1 X40 Y10 E10.8
G1 X40 Y40 E12.0
G1 X10 Y40 E13.2
G1 X10 Y10 E14.4
M104 S0
M140 S0
G1 Z20 F1200
M84
