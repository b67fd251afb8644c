version 1.1

# A small library of text tasks and a workflow over them, with its tests in text.yaml beside it
# (`sprocket test examples/wdl-tests`).

task greet {
  input {
    String name
    String greeting = "Hello"
  }
  command <<<
    echo "~{greeting}, ~{name}!"
    echo "greeted ~{name}" >&2
    printf '%s' "~{greeting}, ~{name}!" > message.txt
  >>>
  output {
    String message = read_string("message.txt")
    File message_file = "message.txt"
  }
}

task count_lines {
  input {
    File text
  }
  command <<<
    wc -l < "~{text}" | tr -d ' ' > n
    cat "~{text}"
  >>>
  output {
    Int n = read_int("n")
    Array[String] lines = read_lines(stdout())
  }
}

task first_word {
  input {
    String text
    Boolean keep = true
  }
  command <<<
    set -e
    word=$(echo "~{text}" | cut -d ' ' -f 1)
    if [ "~{keep}" = "true" ]; then printf '%s' "$word" > word.txt; fi
    printf '%s' "~{text}" | wc -c | tr -d ' ' > length
  >>>
  output {
    File? word = "word.txt"
    Pair[String, Int] text_and_length = ("~{text}", read_int("length"))
    Map[String, Int] counts = {"characters": read_int("length")}
  }
}

workflow summarize {
  input {
    Array[File] texts
    String who = "reader"
  }
  scatter (t in texts) {
    call count_lines { input: text = t }
  }
  call greet { input: name = who }
  output {
    Array[Int] line_counts = count_lines.n
    Int total = length(flatten(count_lines.lines))
    String greeting = greet.message
    Boolean first_is_empty = count_lines.n[0] == 0
  }
}

task forgets_output {
  command <<<
    echo "no report written"
  >>>
  output {
    File report = "report.txt"
  }
}
