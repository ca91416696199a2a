# session 54 call 2: which part of the booking (ledger rows, detections' scoring hand-over) slows the device-paced groups, on the new booking
source tmp_dev/common.sh
N=14 b 200 book_parts_ab python3 $R/tmp_dev/book_parts_ab.py $R 2 512 32
