mini_xception::mini_xception!("models/mini_xception.yaml");

#[test]
fn emotion_counts() {
    println!("{}", MiniXception::summary());
    assert_eq!(MiniXception::PARAMETERS, 58_423);
}
