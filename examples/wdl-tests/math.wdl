version 1.1

# Its tests are in test/math.yaml (the other place Sprocket looks).

task divide {
  input {
    Int numerator
    Int denominator
  }
  command <<<
    if [ ~{denominator} -eq 0 ]; then
      echo "cannot divide ~{numerator} by zero" >&2
      exit 3
    fi
    awk 'BEGIN { print ~{numerator} / ~{denominator} }'
  >>>
  output {
    Float quotient = read_float(stdout())
  }
}

task add {
  input {
    Array[Int] numbers
  }
  command <<<
    echo $(( ~{sep=" + " numbers} ))
  >>>
  output {
    Int sum = read_int(stdout())
  }
}
